"""Session fixtures shared by the test modules (helpers live in tests/helpers.py)."""

# S3 targets and places (two local servers, or your own endpoint): see tests/s3_fixtures.py.
from tests.s3_fixtures import env_s3, moto_s3, rclone_s3, s3, s3_target  # noqa: F401
