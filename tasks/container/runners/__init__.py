"""The runners a container step can use; each turns a ContainerStep into an Execution."""
