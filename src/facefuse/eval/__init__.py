"""Quality measurement of fusion: the development set of real faces and `facefuse eval quality`."""
