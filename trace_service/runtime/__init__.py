"""Process runtime: embedded broker and database for development and tests."""
