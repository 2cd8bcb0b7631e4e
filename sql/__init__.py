"""The numbered migrations; installed as the package ``steamprice.sql`` (see pyproject.toml)."""
