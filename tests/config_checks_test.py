"""Every config field is checked before anything compiles, and each error names its field."""

import pytest

from configs import default
from unet_jax import config_checks


def test_every_field_has_a_rule_and_every_shipped_config_passes():
  fields = set(config_checks.flat_fields(default.get_config()))
  assert fields == set(config_checks.rules())
  config_checks.check(default.get_config(), 8)


@pytest.mark.parametrize('field', sorted(config_checks.rules()))
def test_a_bad_value_of_each_field_is_refused_by_name(field):
  config = default.get_config()
  rule = config_checks.rules()[field]
  *path, name = field.split('.')
  node = config
  for part in path:
    node = node[part]
  with node.ignore_type():
    node[name] = rule.bad
  with pytest.raises(ValueError, match=rf'config\.{field}='):
    config_checks.check(config)


@pytest.mark.parametrize(('overrides', 'message'), [
    ({'batch_size': 12}, r'config\.batch_size=12 does not divide by the 8 devices'),
    ({'data.image_size': 36}, r'config\.data\.image_size=36 must be a multiple of .* 16'),
    ({'data.fold': 5}, r'config\.data\.fold=5 must be < config\.data\.num_folds=5'),
    ({'model.dropout_levels': (5,)}, r'dropout_levels=\(5,\) has a level above'),
    ({'model.norm': 'group', 'model.group_norm_groups': 5}, r'group_norm_groups=5 must divide'),
    ({'data.source': 'folder'}, r"source='folder' needs config\.data\.dir"),
])
def test_fields_that_must_agree(overrides, message):
  config = default.get_config()
  config.update_from_flattened_dict(overrides)
  with pytest.raises(ValueError, match=message):
    config_checks.check(config, 8)


def test_an_unknown_field_in_a_config_file_is_named():
  config = default.get_config()
  config.optim.learning_rate = 0.1  # A config file of one's own, with a typo.
  with pytest.raises(ValueError, match=r'config\.optim\.learning_rate is not a field'):
    config_checks.check(config)
