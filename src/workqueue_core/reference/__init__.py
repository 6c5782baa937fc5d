"""The reference store: the queue semantics in their simplest correct form, shared by the
memory store and the conformance kit's model."""
