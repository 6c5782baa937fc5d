"""The ``workqueue controller`` process: reconciles Work resources on a cluster."""
