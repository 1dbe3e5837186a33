"""Data quality: Great Expectations suites for bronze and the shared asset-check builders."""
