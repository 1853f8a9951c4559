"""What a run will be, decided before it starts (see `descend.training`)."""
