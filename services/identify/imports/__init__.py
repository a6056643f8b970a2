"""Import jobs: files of transactions recorded in the background (see service.py)."""
