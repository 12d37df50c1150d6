"""Who may do what with a conversation, and what a visitor does with theirs: list, share, fork, export, import."""
