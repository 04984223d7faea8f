"""Old home of the gate's dynamic provider (0.1.x); kept only so existing stacks' pickles load."""
