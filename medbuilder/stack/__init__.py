"""Running medbuilder as a service: `medbuilder up` / `down` / `status` / `watch`."""
