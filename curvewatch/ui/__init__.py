"""The dashboard's Streamlit entry script, inside the installed package so that `curvewatch ui`
serves it from a wheel. It sits in a folder of its own because Streamlit puts the folder of the
script it runs on sys.path: next to curvewatch/transformers.py or lightning.py it would shadow
those libraries in the dashboard's process."""
from pathlib import Path

#: the script `streamlit run` is given (the checkout's app.py runs the same `main`)
APP = Path(__file__).resolve().with_name("app.py")
