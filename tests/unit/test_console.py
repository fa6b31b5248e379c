"""What reaches the console: ray_adlf's lines, other libraries' warnings once, no advisories."""

import logging

from ray_adlf.console import ConsoleFilter, OnceFilter, ray_init_options


def record(name: str, level: int, message: str = "m") -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, None, None)


def test_the_console_shows_our_info_and_other_libraries_warnings_only():
    quiet = ConsoleFilter(verbose=False)
    assert quiet.filter(record("ray_adlf.train.pipeline", logging.INFO))
    assert not quiet.filter(record("ray_adlf.train.pipeline", logging.DEBUG))
    assert not quiet.filter(record("ray.train", logging.INFO))
    assert quiet.filter(record("transformers", logging.WARNING))
    advisory = "ray._private.authentication.authentication_token_setup"
    assert not quiet.filter(record(advisory, logging.WARNING))
    assert quiet.filter(record(advisory, logging.ERROR))


def test_verbose_brings_library_info_back():
    loud = ConsoleFilter(verbose=True)
    assert loud.filter(record("ray.train", logging.INFO))
    assert loud.filter(record("ray._private.authentication.x", logging.WARNING))
    assert ray_init_options(verbose=True)["log_to_driver"]
    assert not ray_init_options(verbose=False)["log_to_driver"]


def test_each_warning_is_shown_once():
    once = OnceFilter()
    assert once.filter(record("torch", logging.WARNING, "slow path"))
    assert not once.filter(record("torch", logging.WARNING, "slow path"))
    assert once.filter(record("torch", logging.WARNING, "another"))
