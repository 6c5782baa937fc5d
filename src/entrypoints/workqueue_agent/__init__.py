"""The ``workqueue agent`` process: wires a broker client to the executor and its runners."""
