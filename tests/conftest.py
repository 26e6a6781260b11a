"""Test set-up: 8 simulated CPU devices, so data-parallel code runs as on an 8-GPU host.

The flag must be set before JAX initializes its backend, i.e. before any test module imports jax.
"""

import os

os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           ' --xla_force_host_platform_device_count=8').strip()
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
