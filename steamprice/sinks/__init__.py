"""Sink agents: MySQL and Discord."""
