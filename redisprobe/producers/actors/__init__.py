"""Actors: real child processes that run scripted steps against Redis and stream every operation back."""
