"""Run configs: ``get_config()`` returns an ``ml_collections.ConfigDict`` with score_sde's field names
(schema: :func:`jaxdiff.training.config.default_config`)."""
