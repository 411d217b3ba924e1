"""What every layer above may read: DIM_HOME's paths and the user's settings."""
