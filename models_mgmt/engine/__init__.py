"""The training engine: pure Python, pandas and PyTorch. It must never import Django.

Heavy libraries (pandas, torch) are imported inside functions so the web process stays small.
"""
