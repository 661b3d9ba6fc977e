"""Shared start of the flow configs (``jaxdiff.flows.run.default_flow_config``)."""

from jaxdiff.flows.run import default_flow_config


def base():
    return default_flow_config()
