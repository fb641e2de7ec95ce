"""SQLite storage through peewee: the models, the database and its single group-commit writer."""
