"""The engine daemon's plugins: replay, K-line engine, factors, strategy tree."""
