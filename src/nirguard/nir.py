NIR = object
