"""The optax optimizer and learning-rate schedule described by `config.optim`."""

import jax
import optax

OPTIMIZERS = ('adam', 'adamw', 'sgd')
SCHEDULES = ('constant', 'warmup_cosine', 'step')


def create_schedule(optim_config, num_train_steps: int) -> optax.Schedule:
  """The learning rate as a function of the step."""
  lr = optim_config.lr
  if optim_config.schedule == 'constant':
    return optax.constant_schedule(lr)
  if optim_config.schedule == 'warmup_cosine':
    warmup = min(optim_config.warmup_steps, num_train_steps)
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=lr, warmup_steps=warmup,
        decay_steps=max(num_train_steps, warmup + 1), end_value=lr * optim_config.end_lr_factor)
  if optim_config.schedule == 'step':
    boundaries = {int(f * num_train_steps): optim_config.step_factor
                  for f in optim_config.step_boundaries}
    return optax.piecewise_constant_schedule(lr, boundaries)
  raise ValueError(f'config.optim.schedule={optim_config.schedule!r} is not one of {SCHEDULES}.')


def decay_mask(params):
  """True for the leaves weight decay applies to: conv kernels only, never biases or norm scales."""
  return jax.tree.map_with_path(
      lambda path, _: getattr(path[-1], 'key', None) == 'kernel', params)


def create_optimizer(optim_config, num_train_steps: int) -> optax.GradientTransformation:
  """Clipping (optional), then adam / adamw / sgd with the schedule; decay skips biases and norms."""
  schedule = create_schedule(optim_config, num_train_steps)
  name = optim_config.name
  if name == 'adam':
    optimizer = optax.adam(schedule, b1=optim_config.b1, b2=optim_config.b2, eps=optim_config.eps)
  elif name == 'adamw':
    optimizer = optax.adamw(schedule, b1=optim_config.b1, b2=optim_config.b2, eps=optim_config.eps,
                            weight_decay=optim_config.weight_decay, mask=decay_mask)
  elif name == 'sgd':
    optimizer = optax.chain(
        optax.add_decayed_weights(optim_config.weight_decay, mask=decay_mask),
        optax.sgd(schedule, momentum=optim_config.momentum, nesterov=optim_config.nesterov))
  else:
    raise ValueError(f'config.optim.name={name!r} is not one of {OPTIMIZERS}.')
  if optim_config.grad_clip_norm > 0:
    optimizer = optax.chain(optax.clip_by_global_norm(optim_config.grad_clip_norm), optimizer)
  return optimizer
