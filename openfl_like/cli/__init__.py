"""cli layer of openfl_like (see ARCHITECTURE in README)."""
