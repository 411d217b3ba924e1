"""The composition root: `dim-desktop`'s entry point, the runtime that wires the actors
together, the control socket and the embedded dev gateway. Nothing below imports it."""
