"Bundled plug-in methods: one module each, exported from `nbs/guidance/plugins/`; the registry finds every module here with a `METHODS` list."
