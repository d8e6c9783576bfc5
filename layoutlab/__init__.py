__version__ = "0.1.0"


# %% ../nbs/09a_registry.ipynb #cde1f2a3
_API = {'sample': 'guidance.registry', 'methods': 'guidance.registry', 'register': 'guidance.registry', 'Method': 'guidance.registry',
        'Layout': 'core.layout', 'load_layout': 'core.layout', 'load_pipeline': 'core.models', 'Recorder': 'core.record',
        'load_recording': 'core.record'}  # what `from layoutlab import ...` gives, imported on first use so that `import layoutlab` stays light

def __getattr__(name):
    if name not in _API: raise AttributeError(f"module 'layoutlab' has no attribute {name!r}")
    import importlib
    return getattr(importlib.import_module(f'layoutlab.{_API[name]}'), name)

def __dir__(): return sorted([*globals(), *_API])

# %% ../nbs/09a_registry.ipynb #cde1f2a3
_API = {'sample': 'guidance.registry', 'methods': 'guidance.registry', 'register': 'guidance.registry', 'Method': 'guidance.registry',
        'Layout': 'core.layout', 'load_layout': 'core.layout', 'load_pipeline': 'core.models', 'Recorder': 'core.record',
        'load_recording': 'core.record'}  # what `from layoutlab import ...` gives, imported on first use so that `import layoutlab` stays light

def __getattr__(name):
    if name not in _API: raise AttributeError(f"module 'layoutlab' has no attribute {name!r}")
    import importlib
    return getattr(importlib.import_module(f'layoutlab.{_API[name]}'), name)

def __dir__(): return sorted([*globals(), *_API])

# %% ../nbs/09a_registry.ipynb #cde1f2a3
_API = {'sample': 'guidance.registry', 'methods': 'guidance.registry', 'register': 'guidance.registry', 'Method': 'guidance.registry',
        'Layout': 'core.layout', 'load_layout': 'core.layout', 'load_pipeline': 'core.models', 'Recorder': 'core.record',
        'load_recording': 'core.record'}  # what `from layoutlab import ...` gives, imported on first use so that `import layoutlab` stays light

def __getattr__(name):
    if name not in _API: raise AttributeError(f"module 'layoutlab' has no attribute {name!r}")
    import importlib
    return getattr(importlib.import_module(f'layoutlab.{_API[name]}'), name)

def __dir__(): return sorted([*globals(), *_API])

# %% ../nbs/09a_registry.ipynb #cde1f2a3
_API = {'sample': 'guidance.registry', 'methods': 'guidance.registry', 'register': 'guidance.registry', 'Method': 'guidance.registry',
        'Layout': 'core.layout', 'load_layout': 'core.layout', 'load_pipeline': 'core.models', 'Recorder': 'core.record',
        'load_recording': 'core.record'}  # what `from layoutlab import ...` gives, imported on first use so that `import layoutlab` stays light

def __getattr__(name):
    if name not in _API: raise AttributeError(f"module 'layoutlab' has no attribute {name!r}")
    import importlib
    return getattr(importlib.import_module(f'layoutlab.{_API[name]}'), name)

def __dir__(): return sorted([*globals(), *_API])

# %% ../nbs/09a_registry.ipynb #cde1f2a3
_API = {'sample': 'guidance.registry', 'methods': 'guidance.registry', 'register': 'guidance.registry', 'Method': 'guidance.registry',
        'Layout': 'core.layout', 'load_layout': 'core.layout', 'load_pipeline': 'core.models', 'Recorder': 'core.record',
        'load_recording': 'core.record'}  # what `from layoutlab import ...` gives, imported on first use so that `import layoutlab` stays light

def __getattr__(name):
    if name not in _API: raise AttributeError(f"module 'layoutlab' has no attribute {name!r}")
    import importlib
    return getattr(importlib.import_module(f'layoutlab.{_API[name]}'), name)

def __dir__(): return sorted([*globals(), *_API])

# %% ../nbs/09a_registry.ipynb #cde1f2a3
_API = {'sample': 'guidance.registry', 'methods': 'guidance.registry', 'register': 'guidance.registry', 'Method': 'guidance.registry',
        'Layout': 'core.layout', 'load_layout': 'core.layout', 'load_pipeline': 'core.models', 'Recorder': 'core.record',
        'load_recording': 'core.record'}  # what `from layoutlab import ...` gives, imported on first use so that `import layoutlab` stays light

def __getattr__(name):
    if name not in _API: raise AttributeError(f"module 'layoutlab' has no attribute {name!r}")
    import importlib
    return getattr(importlib.import_module(f'layoutlab.{_API[name]}'), name)

def __dir__(): return sorted([*globals(), *_API])

# %% ../nbs/09a_registry.ipynb #cde1f2a3
_API = {'sample': 'guidance.registry', 'methods': 'guidance.registry', 'register': 'guidance.registry', 'Method': 'guidance.registry',
        'Layout': 'core.layout', 'load_layout': 'core.layout', 'load_pipeline': 'core.models', 'Recorder': 'core.record',
        'load_recording': 'core.record'}  # what `from layoutlab import ...` gives, imported on first use so that `import layoutlab` stays light

def __getattr__(name):
    if name not in _API: raise AttributeError(f"module 'layoutlab' has no attribute {name!r}")
    import importlib
    return getattr(importlib.import_module(f'layoutlab.{_API[name]}'), name)

def __dir__(): return sorted([*globals(), *_API])

# %% ../nbs/09a_registry.ipynb #cde1f2a3
_API = {'sample': 'guidance.registry', 'methods': 'guidance.registry', 'register': 'guidance.registry', 'Method': 'guidance.registry',
        'Layout': 'core.layout', 'load_layout': 'core.layout', 'load_pipeline': 'core.models', 'Recorder': 'core.record',
        'load_recording': 'core.record'}  # what `from layoutlab import ...` gives, imported on first use so that `import layoutlab` stays light

def __getattr__(name):
    if name not in _API: raise AttributeError(f"module 'layoutlab' has no attribute {name!r}")
    import importlib
    return getattr(importlib.import_module(f'layoutlab.{_API[name]}'), name)

def __dir__(): return sorted([*globals(), *_API])

# %% ../nbs/09a_registry.ipynb #cde1f2a3
_API = {'sample': 'guidance.registry', 'methods': 'guidance.registry', 'register': 'guidance.registry', 'Method': 'guidance.registry',
        'Layout': 'core.layout', 'load_layout': 'core.layout', 'load_pipeline': 'core.models', 'Recorder': 'core.record',
        'load_recording': 'core.record'}  # what `from layoutlab import ...` gives, imported on first use so that `import layoutlab` stays light

def __getattr__(name):
    if name not in _API: raise AttributeError(f"module 'layoutlab' has no attribute {name!r}")
    import importlib
    return getattr(importlib.import_module(f'layoutlab.{_API[name]}'), name)

def __dir__(): return sorted([*globals(), *_API])

# %% ../nbs/09a_registry.ipynb #cde1f2a3
_API = {'sample': 'guidance.registry', 'methods': 'guidance.registry', 'register': 'guidance.registry', 'Method': 'guidance.registry',
        'Layout': 'core.layout', 'load_layout': 'core.layout', 'load_pipeline': 'core.models', 'Recorder': 'core.record',
        'load_recording': 'core.record'}  # what `from layoutlab import ...` gives, imported on first use so that `import layoutlab` stays light

def __getattr__(name):
    if name not in _API: raise AttributeError(f"module 'layoutlab' has no attribute {name!r}")
    import importlib
    return getattr(importlib.import_module(f'layoutlab.{_API[name]}'), name)

def __dir__(): return sorted([*globals(), *_API])

# %% ../nbs/09a_registry.ipynb #cde1f2a3
_API = {'sample': 'guidance.registry', 'methods': 'guidance.registry', 'register': 'guidance.registry', 'Method': 'guidance.registry',
        'Layout': 'core.layout', 'load_layout': 'core.layout', 'load_pipeline': 'core.models', 'Recorder': 'core.record',
        'load_recording': 'core.record'}  # what `from layoutlab import ...` gives, imported on first use so that `import layoutlab` stays light

def __getattr__(name):
    if name not in _API: raise AttributeError(f"module 'layoutlab' has no attribute {name!r}")
    import importlib
    return getattr(importlib.import_module(f'layoutlab.{_API[name]}'), name)

def __dir__(): return sorted([*globals(), *_API])

# %% ../nbs/09a_registry.ipynb #cde1f2a3
_API = {'sample': 'guidance.registry', 'methods': 'guidance.registry', 'register': 'guidance.registry', 'Method': 'guidance.registry',
        'Layout': 'core.layout', 'load_layout': 'core.layout', 'load_pipeline': 'core.models', 'Recorder': 'core.record',
        'load_recording': 'core.record'}  # what `from layoutlab import ...` gives, imported on first use so that `import layoutlab` stays light

def __getattr__(name):
    if name not in _API: raise AttributeError(f"module 'layoutlab' has no attribute {name!r}")
    import importlib
    return getattr(importlib.import_module(f'layoutlab.{_API[name]}'), name)

def __dir__(): return sorted([*globals(), *_API])

# %% ../nbs/09a_registry.ipynb #cde1f2a3
_API = {'sample': 'guidance.registry', 'methods': 'guidance.registry', 'register': 'guidance.registry', 'Method': 'guidance.registry',
        'Layout': 'core.layout', 'load_layout': 'core.layout', 'load_pipeline': 'core.models', 'Recorder': 'core.record',
        'load_recording': 'core.record'}  # what `from layoutlab import ...` gives, imported on first use so that `import layoutlab` stays light

def __getattr__(name):
    if name not in _API: raise AttributeError(f"module 'layoutlab' has no attribute {name!r}")
    import importlib
    return getattr(importlib.import_module(f'layoutlab.{_API[name]}'), name)

def __dir__(): return sorted([*globals(), *_API])

# %% ../nbs/09a_registry.ipynb #cde1f2a3
_API = {'sample': 'guidance.registry', 'methods': 'guidance.registry', 'register': 'guidance.registry', 'Method': 'guidance.registry',
        'Layout': 'core.layout', 'load_layout': 'core.layout', 'load_pipeline': 'core.models', 'Recorder': 'core.record',
        'load_recording': 'core.record'}  # what `from layoutlab import ...` gives, imported on first use so that `import layoutlab` stays light

def __getattr__(name):
    if name not in _API: raise AttributeError(f"module 'layoutlab' has no attribute {name!r}")
    import importlib
    return getattr(importlib.import_module(f'layoutlab.{_API[name]}'), name)

def __dir__(): return sorted([*globals(), *_API])

# %% ../nbs/09a_registry.ipynb #cde1f2a3
_API = {'sample': 'guidance.registry', 'methods': 'guidance.registry', 'register': 'guidance.registry', 'Method': 'guidance.registry',
        'Layout': 'core.layout', 'load_layout': 'core.layout', 'load_pipeline': 'core.models', 'Recorder': 'core.record',
        'load_recording': 'core.record'}  # what `from layoutlab import ...` gives, imported on first use so that `import layoutlab` stays light

def __getattr__(name):
    if name not in _API: raise AttributeError(f"module 'layoutlab' has no attribute {name!r}")
    import importlib
    return getattr(importlib.import_module(f'layoutlab.{_API[name]}'), name)

def __dir__(): return sorted([*globals(), *_API])

# %% ../nbs/09a_registry.ipynb #cde1f2a3
_API = {'sample': 'guidance.registry', 'methods': 'guidance.registry', 'register': 'guidance.registry', 'Method': 'guidance.registry',
        'Layout': 'core.layout', 'load_layout': 'core.layout', 'load_pipeline': 'core.models', 'Recorder': 'core.record',
        'load_recording': 'core.record'}  # what `from layoutlab import ...` gives, imported on first use so that `import layoutlab` stays light

def __getattr__(name):
    if name not in _API: raise AttributeError(f"module 'layoutlab' has no attribute {name!r}")
    import importlib
    return getattr(importlib.import_module(f'layoutlab.{_API[name]}'), name)

def __dir__(): return sorted([*globals(), *_API])