"""A Keras 3 model (torch backend) logged to Curvewatch: one callback (the lines marked  # +cw)."""
import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # before importing keras

import keras  # noqa: E402
from sklearn.datasets import load_breast_cancer  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from curvewatch.keras import CurvewatchCallback  # noqa: E402  # +cw

x, y = load_breast_cancer(return_X_y=True)
x = ((x - x.mean(0)) / x.std(0)).astype("float32")
xt, xv, yt, yv = train_test_split(x, y.astype("float32"), random_state=0)
model = keras.Sequential([keras.Input((30,)), keras.layers.Dense(32, activation="relu"),
                          keras.layers.Dense(1)], name="keras-quickstart")
model.compile(optimizer=keras.optimizers.Adam(1e-3),
              loss=keras.losses.BinaryCrossentropy(from_logits=True), metrics=["accuracy"])
model.fit(xt, yt, validation_data=(xv, yv), epochs=10, batch_size=32, verbose=0,
          callbacks=[CurvewatchCallback(early_stop=("overfitting",))])  # +cw
