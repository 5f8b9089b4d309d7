"""The driver's options are defined once; the driver, plugin and codec server take that list."""

from __future__ import annotations

import inspect
import typing

import pytest

from casstore import CasStorageDriver, CasStorePlugin
from casstore.backends import MemoryBackend
from casstore.errors import ConfigurationError
from casstore.plugin import DriverOptions
from casstore.server import create_app


def test_an_unknown_option_names_itself_and_the_known_ones() -> None:
    known = r"unknown driver option 'scop' \(expected: name, scope,"
    with pytest.raises(ConfigurationError, match=known):
        CasStorageDriver(MemoryBackend(), scop="namespace")  # type: ignore[call-arg]
    with pytest.raises(ConfigurationError, match="unknown driver option 'scop'"):
        CasStorePlugin(MemoryBackend(), scop="namespace")  # type: ignore[call-arg]


def test_the_signature_shows_every_option_with_its_default() -> None:
    parameters = inspect.signature(CasStorageDriver).parameters
    assert list(parameters)[1:] == list(DriverOptions.__annotations__)
    assert parameters["scope"].default == "workflow"
    assert parameters["compression_level"].default == 3
    assert parameters["keyring"].default is None
    driver = CasStorageDriver(MemoryBackend())
    assert driver.name() == "casstore"
    assert repr(driver).startswith("CasStorageDriver(name='casstore', scope='workflow'")


def test_plugin_and_codec_server_take_the_same_options() -> None:
    for function in (CasStorePlugin.__init__, create_app):
        hints = typing.get_type_hints(function, include_extras=True)
        (kwargs,) = typing.get_args(hints["driver_options"])
        assert kwargs is DriverOptions, function
    plugin = CasStorePlugin(MemoryBackend(), scope="namespace", name="mine")
    assert plugin.driver.name() == "mine"
    assert repr(plugin.driver).startswith("CasStorageDriver(name='mine', scope='namespace'")
