"""Development helpers: what the one-command start (`scripts/serve.sh`) and the tests
run beside the app. Nothing here is imported by the app itself."""
