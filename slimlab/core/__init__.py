"""Method-agnostic building blocks shared by every slimlab family."""
