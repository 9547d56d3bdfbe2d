"""The plugin's dialogs: "Install CARL dependencies" and "Download CARL-SSL weights"."""
