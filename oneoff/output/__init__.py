"""Everything that reaches the operator's terminal: reporters, views, the terminal itself."""
