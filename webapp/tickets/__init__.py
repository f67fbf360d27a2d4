"""Tickets created from mail: queue overview, ticket screens, downloads, failed mail, CLI."""
