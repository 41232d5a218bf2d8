"""The dry-run: the same pipeline on a throwaway store and a virtual clock, and its report."""
