"""`ferbench prepare`: decoding, face detection and tracking, alignment, indices, augmentation, the dask job."""
