"""Install script for the DilatedRNN / IndRNN TF2 library.

Two importable packages are shipped: ``dilated_rnn`` and ``ind_rnn``.
"""
import setuptools

with open("README.md", encoding="utf-8") as readme:
    LONG_DESCRIPTION = readme.read()

setuptools.setup(
    name="drnn-indrnn-tf2",
    version="0.1.0",
    description=("TensorFlow 2 / Keras DilatedRNN and IndRNN, faithful to the "
                 "TF1 originals and fast."),
    long_description=LONG_DESCRIPTION,
    long_description_content_type="text/markdown",
    packages=setuptools.find_packages(include=["dilated_rnn", "dilated_rnn.*",
                                               "ind_rnn", "ind_rnn.*"]),
    # The C++ kernel sources are compiled on first use: ship them with the packages.
    package_data={"ind_rnn": ["native/*.cc", "native/*.h"], "dilated_rnn": ["native/*.cc", "native/*.h"]},
    python_requires=">=3.9",
    install_requires=[
        # TF 2.16 is the first release whose tf.keras is Keras 3.
        "tensorflow>=2.16,<3",
        "numpy",
        "absl-py",
    ],
    extras_require={
        # Examples: MNIST through TFDS, the offline 8x8 digits, plots, and
        # TensorBoard to view the logs they write (TF no longer installs it).
        "examples": ["tensorflow-datasets", "scikit-learn", "matplotlib", "tensorboard"],
        # The TF1 graph-mode path (tf.compat.v1 + Keras 2 cells).
        "legacy": ["tf-keras"],
        # The examples' tests run them whole: their TensorBoard callback too.
        "test": ["pytest", "tensorflow-datasets", "scikit-learn",
                 "matplotlib", "tensorboard", "tf-keras"],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "License :: OSI Approved :: Apache Software License",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
