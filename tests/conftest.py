"""Session fixtures shared by the test modules (helpers live in tests/helpers.py)."""

# Object-store targets (moto, rclone, Azurite): see tests/objectstore_fixtures.py.
# GCS: one fake-gcs-server per session, a fresh bucket per test (tests/gcs_fixtures.py).
from tests.gcs_fixtures import gcs_place, gcs_server  # noqa: F401
from tests.objectstore_fixtures import azurite, objstore, objstore_server  # noqa: F401

# Redis: one redis-server per session, a fresh prefix per test (tests/redis_fixtures.py).
from tests.redis_fixtures import redis_place, redis_server  # noqa: F401

# S3 targets and places (two local servers, or your own endpoint): see tests/s3_fixtures.py.
from tests.s3_fixtures import env_s3, moto_s3, rclone_s3, s3, s3_target  # noqa: F401
