"""The workflows behind the CLI, as plain functions: erase, evaluate, attack, bench, demo, export, toy quality."""
