"""The stack's CrossGuard policy pack. Importing this package or its modules only defines
policies; policies/__main__.py is what builds the PolicyPack and serves it."""
