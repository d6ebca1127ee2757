"""VPC-in-a-box: moto EC2 (patched for fidelity, SigV4 on), IMDSv2 per node, network namespaces with hot-plug.

Start and stop with `python -m tests.vpcsim start --name NAME` / `stop --name NAME` from the repository root.
"""
