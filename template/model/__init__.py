"""The project's model code: the Determined trial and its experiment configs."""
