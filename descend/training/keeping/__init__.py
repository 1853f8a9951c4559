"""A run on disk: its folder, and how it resumes (see `descend.training`)."""
