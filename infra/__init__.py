"""Deployment: Alembic migrations, the Dockerfile and topic setup for tweetwatch."""
