"""Operator tools: the ``casstore`` subcommands that inspect and maintain a store."""
