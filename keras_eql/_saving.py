"""`load_model`: a `.keras` round trip that keeps a custom-compile model's loss.

Keras restores a model's compiled loss (and with it the keras_eql statistics)
only when the model's class leaves `compile()` alone. A class that overrides
it, as every KerasHub task does, is loaded with Keras's generic warning
"`compile()` was not called as part of model loading because the model's
`compile()` method is custom", and the task's constructor compiles it with
its default loss. No keras_eql code runs during such a load, so keras_eql
cannot repair or stop it there; `load_model` does the step Keras skips.
"""

import json
import os
import warnings
import zipfile

import keras

# Keras's messages for what `load_model` repairs (matched at the start).
_SKIPPED_COMPILE = "`compile()` was not called as part of model loading"
_SKIPPED_OPTIMIZER = "Skipping variable loading for optimizer"


def overrides_compile(model):
    """Whether `keras.models.load_model` skips the saved compile arguments of `model`.

    Keras 3 re-applies them only when the model's class does not override
    `compile()`; every KerasHub task does.

    Args:
        model: a `keras.Model`.

    Returns:
        True for a model whose class defines its own `compile()`.
    """
    return type(model).compile is not keras.Model.compile


def dropped_loss_message(model, caller):
    """The error for a custom-compile model found without a keras_eql loss.

    Args:
        model: the model (its class overrides `compile()`).
        caller: what found it, e.g. `"GradientStatisticsLogger"`.
    """
    losses = keras.tree.flatten(getattr(model, "loss", None))
    found = ", ".join(sorted({type(loss).__name__ for loss in losses})) or "none"
    return (
        f"{caller}: the model has no keras_eql loss (its losses: {found}), and "
        f"{type(model).__name__} overrides compile(). If it was loaded with "
        "keras.models.load_model, Keras re-compiled it with the class's default loss and "
        "dropped the saved keras_eql loss and its statistics: load it with "
        "keras_eql.load_model(path), which restores both. To start a keras_eql loss from "
        "scratch, pass it to compile().")


def _saved_compile_config(filepath):
    """The `compile_config` of a `.keras` archive, or None."""
    with zipfile.ZipFile(filepath) as archive:
        config = json.loads(archive.read("config.json"))
    return config.get("compile_config") or None


def load_model(filepath, custom_objects=None, compile=True, safe_mode=True):
    """`keras.models.load_model` that also restores a custom-compile model's loss.

    For a model whose class overrides `compile()` (every KerasHub task, e.g.
    `keras_hub.models.ResNetImageClassifier` or `RetinaNetObjectDetector`),
    `keras.models.load_model` silently drops the compiled loss: the task
    comes back compiled with its default loss (`SparseCategoricalCrossentropy`,
    `BinaryFocalCrossentropy`, ...), without the keras_eql loss and its
    statistics, and a resumed `fit` trains another loss from zero statistics.
    This function loads the file with Keras, then applies the saved compile
    arguments with `keras.Model.compile` (what Keras does for a model
    without a custom `compile()`), and restores the optimizer state and the
    losses' statistics from the same file. Task-specific compile options
    that Keras does not record keep the values the task's constructor set.

    Any other model, or `compile=False`, gives exactly
    `keras.models.load_model(...)`, so this is a drop-in replacement.
    Under the JAX backend the compiled model also comes back attached
    (`keras_eql.attach`), ready to resume training.

    Args:
        filepath: a `.keras` file written by `model.save`.
        custom_objects: as for `keras.models.load_model`.
        compile: whether to compile the loaded model.
        safe_mode: as for `keras.models.load_model`.

    Returns:
        The `keras.Model`, compiled as it was saved, statistics included.

    Raises:
        ValueError: `filepath` is not a `.keras` archive while the model's
            class overrides `compile()`: only a `.keras` file records the
            compile arguments and the statistics together.

    Example:
        >>> import os, tempfile, keras, keras_eql
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        >>> model.compile("sgd", loss=keras_eql.EqualizedFocalLoss())
        >>> path = os.path.join(tempfile.mkdtemp(), "model.keras")
        >>> model.save(path)
        >>> type(keras_eql.load_model(path).loss).__name__
        'EqualizedFocalLoss'
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = keras.models.load_model(
            filepath, custom_objects=custom_objects, compile=compile, safe_mode=safe_mode)
    restore = compile and overrides_compile(model)
    if restore and not (str(filepath).endswith(".keras") and zipfile.is_zipfile(filepath)):
        raise ValueError(
            f"keras_eql.load_model: {type(model).__name__} overrides compile(), so its loss and "
            f"statistics can only be restored from a .keras file (model.save('....keras')); "
            f"got {os.fspath(filepath)!r}.")
    compile_config = _saved_compile_config(filepath) if restore else None
    for warning in caught:
        message = str(warning.message)
        if compile_config and message.startswith((_SKIPPED_COMPILE, _SKIPPED_OPTIMIZER)):
            continue  # repaired below
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    if compile_config:
        arguments = keras.saving.deserialize_keras_object(
            compile_config, custom_objects=custom_objects, safe_mode=safe_mode)
        keras.Model.compile(model, **arguments)
        if model.built:
            model.optimizer.build(model.trainable_variables)
        # The same file again: optimizer slots, metric and loss state.
        model.load_weights(filepath)
    if compile and getattr(model, "compiled", False):
        from keras_eql._backend import attach

        attach(model)  # JAX: the statistics become model state again; elsewhere a no-op
    return model
