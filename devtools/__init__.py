"""The dev rig, apart from the product: the sandbox GitHub and Inngest, the Actions runner,
the playground, the demo and the benchmarks. Nothing in jobstore/ or capture/ imports it;
its dependencies are the `dev` extra, and it is used from a checkout (not installed)."""
