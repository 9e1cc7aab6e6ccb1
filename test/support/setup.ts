// @peculiar/x509 needs reflect-metadata loaded before it (PLATFORM.md).
import 'reflect-metadata';
