"""The epoch loop and what runs inside it (see `descend.training`)."""
