from configparser import ConfigParser
import setuptools, shlex

# Everything about the package is read from settings.ini (nbdev's single source of settings)
config = ConfigParser(delimiters=['='])
config.read('settings.ini', encoding='utf-8')
cfg = config['DEFAULT']

licenses = {'apache2': ('Apache Software License 2.0','OSI Approved :: Apache Software License')}
statuses = ['1 - Planning','2 - Pre-Alpha','3 - Alpha','4 - Beta','5 - Production/Stable','6 - Mature','7 - Inactive']
lic = licenses[cfg['license'].lower()]
requirements = shlex.split(cfg.get('requirements', ''))
dev_requirements = shlex.split(cfg.get('dev_requirements', ''))
scripts = [s.strip() for s in cfg.get('console_scripts', '').split() if s.strip()]

setuptools.setup(
    name=cfg['lib_name'], version=cfg['version'], license=lic[0],
    description=cfg['description'], keywords=cfg['keywords'],
    author=cfg['author'], author_email=cfg['author_email'], url=cfg['git_url'],
    classifiers=['Development Status :: ' + statuses[int(cfg['status'])],
                 'Intended Audience :: ' + cfg['audience'].title(),
                 'License :: ' + lic[1], 'Natural Language :: ' + cfg['language'].title(),
                 'Programming Language :: Python :: 3'],
    packages=setuptools.find_packages(include=['layoutlab', 'layoutlab.*']),
    package_data={'layoutlab': ['assets/*', 'assets/*/*', 'assets/*/*/*']},
    include_package_data=True,
    install_requires=requirements,
    extras_require={'dev': dev_requirements},
    python_requires='>=' + cfg['min_python'],
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    zip_safe=False,
    entry_points={'console_scripts': scripts, 'nbdev': [f"{cfg['lib_name']}={cfg['lib_name']}._modidx:d"]},
)
