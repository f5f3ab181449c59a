"""The one outage rule (nirguard._redis.outage): each error reply and connection failure
is an outage, a misconfiguration or a bug, and messages never carry what they were given."""

from __future__ import annotations

import socket
import ssl

import pytest

from nirguard import ConfigurationError
from nirguard._redis.outage import StoreUnavailable, classify, connect_error
from nirguard._redis.wire import ReplyError

OUTAGES = [
    "LOADING Redis is loading the dataset in memory",
    "READONLY You can't write against a read only replica.",
    "CLUSTERDOWN The cluster is down",
    "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
    "TRYAGAIN Multiple keys request during rehashing of slot",
    "BUSY Redis is busy running a script.",
    "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist",
    "NOREPLICAS Not enough good replicas to write.",
    "OOM command not allowed when used memory > 'maxmemory'.",
]
MISCONFIGURATIONS = [
    "WRONGPASS invalid username-password pair or user is disabled.",
    "NOAUTH Authentication required.",
    "NOPERM this user has no permissions to run the 'fcall' command",
    "ERR unknown command 'FCALL', with args beginning with: ",
    "ERR DB index is out of range",
    "ERR This instance has cluster support disabled",
    "ERR Protocol error: unauthenticated multibulk length",
    "ERR AUTH <password> called without any password configured for the default user.",
    "MOVED 3999 127.0.0.1:6381",
    "ASK 3999 127.0.0.1:6381",
    "CROSSSLOT Keys in request don't hash to the same slot",
]
BUGS = [
    "ERR user_script:1: attempt to compare nil with number script: nirguard_0123",
    "WRONGTYPE Operation against a key holding the wrong kind of value",
    "ERR Error running script",
]


@pytest.mark.parametrize("message", OUTAGES)
def test_a_server_that_is_not_ready_is_an_outage(message: str) -> None:
    assert isinstance(classify(ReplyError(message)), StoreUnavailable)


@pytest.mark.parametrize("message", MISCONFIGURATIONS)
def test_a_deployment_that_is_wrong_is_a_misconfiguration(message: str) -> None:
    error = classify(ReplyError(message))
    assert isinstance(error, ConfigurationError)
    assert "127.0.0.1" not in str(error) and "fcall" not in str(error).lower()


@pytest.mark.parametrize("message", BUGS)
def test_anything_else_is_raised_as_itself(message: str) -> None:
    error = ReplyError(message)
    assert classify(error) is error


def test_connection_failures() -> None:
    verify = ssl.SSLCertVerificationError(1, "certificate verify failed")
    assert isinstance(connect_error(verify), ConfigurationError)
    unknown = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    assert isinstance(connect_error(unknown), ConfigurationError)
    again = socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
    assert isinstance(connect_error(again), StoreUnavailable)  # a resolver that is down
    assert isinstance(connect_error(ConnectionRefusedError()), StoreUnavailable)
    assert isinstance(connect_error(TimeoutError()), StoreUnavailable)
