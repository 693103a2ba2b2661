//! tierstack for Python.
