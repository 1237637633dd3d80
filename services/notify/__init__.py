"""Notify: customer notifications and relationship-manager tasks (issue 7)."""
